"""The keys of every dict that crosses a module boundary, in one place.

Environment observations follow gymnasium + LeRobot's env convention; datasets, policies and the server use LeRobot's
feature names. `genba.sim` produces the first, `genba.datasets` maps them to the second.
"""

# --- environment observation dict (gymnasium side, LeRobot env convention) ---
PIXELS = "pixels"  # {camera name: (H, W, 3) uint8}
DEPTH = "depth"  # {camera name: (H, W) float32 metres}, only when depth is enabled
AGENT_POS = "agent_pos"  # (S,) float32 joint positions
ENV_STATE = "environment_state"  # (E,) float32 privileged object state, LeRobot's name for it

# --- environment info dict ---
INFO_SUCCESS = "is_success"  # bool, LeRobot's key
INFO_TRUNCATION_REASON = "truncation_reason"  # str, set when the episode was cut short (physics blow-up, ...)
INFO_PHYSICS = "physics"  # dict of the sampled physical parameters of the episode

# --- dataset / policy / server features (LeRobot names) ---
OBSERVATION = "observation"  # prefix of every observation feature: f"{OBSERVATION}.state", ...
OBS_IMAGES = "observation.images"  # prefix: f"{OBS_IMAGES}.{camera}" -> video feature
OBS_DEPTH = "observation.depth"  # prefix: f"{OBS_DEPTH}.{camera}" -> (H, W, 1) float32 depth in metres
OBS_STATE = "observation.state"
OBS_ENV_STATE = "observation.environment_state"
ACTION = "action"
TASK = "task"  # the instruction string
EPISODE_INDEX = "episode_index"  # (B,) int64: the episode a sample comes from (LeRobot's column)
LOCATE_TASK = "locate.task"  # training batches: an instruction naming another object of the sample's scene (B,) str
LOCATE_SLOT = "locate.slot"  # training batches: that object's environment-state slot (B,) int64
OBS_AUDIO = "observation.audio"  # (T,) float32 mono waveform of the spoken instruction, at AUDIO_SAMPLE_RATE
AUDIO_SAMPLE_RATE = 16000  # Hz: genba's speech (genba.speech), stored episode audio and the server's default
OBS_AUDIO_RATE = "observation.audio_sample_rate"  # int Hz, sent beside OBS_AUDIO to a policy server
ACTIONS = "actions"  # policy output: (H, A) action chunk
PAD_SUFFIX = "_is_pad"  # f"{key}{PAD_SUFFIX}": (T,) bool, True where a clip window crossed an episode boundary
FUTURE = "future"  # prefix of the world model's targets in a clip: f"{FUTURE}.images.<cam>", FUTURE_STATE
FUTURE_STATE = f"{FUTURE}.state"
FUTURE_IS_PAD = f"{FUTURE}{PAD_SUFFIX}"
NEXT_SUCCESS = "next.success"  # (T,) per-frame label, LeRobot's: the task holds after action t

# --- policy server messages (openpi's protocol) ---
PROMPT = "prompt"  # openpi's name for the instruction; the server accepts it as an alias of TASK
RESET = "reset"  # optional bool in an observation: reset the connection's policy first (genba's extension)
SERVER_TIMING = "server_timing"

# --- environment variables ---
TRITON_KERNELS_ENV = "GENBA_TRITON_KERNELS"  # auto | tma | pointer: which Triton kernels st_attention takes on CUDA
# --- cameras and joints of the genba arm ---
FRONT = "front"
WRIST = "wrist"
CAMERAS = (FRONT, WRIST)
JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")


def image_key(camera: str) -> str:
    return f"{OBS_IMAGES}.{camera}"


def depth_key(camera: str) -> str:
    return f"{OBS_DEPTH}.{camera}"


def future_image_key(camera: str) -> str:
    return f"{FUTURE}.images.{camera}"


def pad_key(key: str) -> str:
    return f"{key}{PAD_SUFFIX}"

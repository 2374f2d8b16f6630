"""genba.serving: policies served to robot arms over openpi's websocket protocol, hardened, and the robot side.

protocol.py     wire format (msgpack + openpi's ndarray encoding, decoded strictly) and input/action specs
policies.py     the served-policy interface and the built-in policies (scripted experts, linear, hold)
safety.py       per-robot joint limits and max change per step; every action is clipped
server.py       `genba serve` config and entry point (stdlib-only imports, for a fast --help)
app.py          the asyncio websocket server: auth, validation, batching, timing, structured logs
client.py       RemotePolicy, ChunkBroker (ask early, blend the overlap), RobotClient (fixed rate + watchdog)
robots.py       robot adapters: the genba MuJoCo arm, any lerobot Robot (SO-101 units)
lerobot_sim.py  a simulated SO-101 follower implementing lerobot's Robot interface
bench.py        `genba bench serve`: round-trip latency and server overhead
"""

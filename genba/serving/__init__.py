"""genba.serving: policies (genba.policies) served to arms over openpi's websocket protocol, hardened; the robot side.

protocol.py     wire format (msgpack + openpi's ndarray encoding, decoded strictly)
safety.py       per-robot joint limits and max change per step, converted to the policy's units; every
                action is clipped
server.py       `genba serve` config and entry point (stdlib-only imports, for a fast --help)
app.py          the asyncio websocket server: auth, validation, batching, timing, structured logs
remote.py       RemotePolicy: a served policy behind the policy contract (specs from the server's metadata)
robot_client.py RobotClient: the one episode loop at an arm's rate, background chunk broker, watchdog, limits
robots.py       robot adapters: any lerobot Robot (SO-101 units); the simulated arm is genba.sim.arm.SimArm
lerobot_sim.py  a simulated SO-101 follower implementing lerobot's Robot interface
bench.py        `genba bench serve`: round-trip latency and server overhead
"""

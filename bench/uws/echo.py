"""uWebSockets (through PyPI socketify) echo server: a peer in
bench/compare.sh, for idle memory per connection only (the Python callback
makes its CPU and latency figures incomparable).

Usage: python3 echo.py [--listen 127.0.0.1:9004]
Needs Debian's libuv1 (apt-get install -y libuv1) and `pip install socketify`.
"""

import sys

from socketify import App, CompressOptions, OpCode


def main() -> None:
    listen = "127.0.0.1:9004"
    if "--listen" in sys.argv:
        listen = sys.argv[sys.argv.index("--listen") + 1]
    host, _, port = listen.rpartition(":")

    def on_message(ws, message, opcode):
        ws.send(message, OpCode.BINARY if opcode == OpCode.BINARY else opcode)

    app = App()
    app.ws(
        "/*",
        {
            "compression": CompressOptions.DISABLED,
            "max_payload_length": 64 * 1024,
            # Long enough that no idle connection is closed during a run.
            "idle_timeout": 960,
            "message": on_message,
        },
    )

    def on_listen(config):
        print(f"uws: echo on ws://{host}:{port}", file=sys.stderr, flush=True)

    app.listen({"port": int(port), "host": host}, on_listen)
    app.run()


if __name__ == "__main__":
    main()

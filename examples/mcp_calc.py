"""A small MCP server, built with the official SDK, to wire to an agent (one line):

    AGENTHUB_MCP_SERVERS='{"calc": {"command": ".venv/bin/python",
                                    "args": ["examples/mcp_calc.py"]}}'

Run alone (`python examples/mcp_calc.py`) it speaks MCP on its stdin and stdout; with
`--http PORT` it serves Streamable HTTP at `http://127.0.0.1:PORT/mcp` instead.
"""

from __future__ import annotations

import sys

from mcp.server import MCPServer

server = MCPServer("calc")


@server.tool()
def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


@server.tool()
def multiply(a: float, b: float) -> float:
    """Multiply two numbers."""
    return a * b


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")

"""The MCP engine: sessions to the operator's MCP servers (`AGENTHUB_MCP_SERVERS`), whose tools
agents may use. It knows servers and tools by name, never a domain."""

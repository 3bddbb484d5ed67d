"""What the scenario scripts share: one tool call through the SDK, as a plain dict."""

from mcp.shared.exceptions import MCPError


def text_of(result):
    return "\n".join(c.text for c in result.content if getattr(c, "type", None) == "text")


async def call(c, name, args):
    """{"text", "is_error", "code"}: `code` is the JSON-RPC error code of a protocol error."""
    try:
        r = await c.call_tool(name, args)
        return {"text": text_of(r), "is_error": bool(r.is_error), "code": None}
    except MCPError as e:
        return {"text": e.message, "is_error": True, "code": e.code}

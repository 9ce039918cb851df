"""Install, activate and configure the Alch3mist plugins in a running Open WebUI, through its HTTP API only.

Used by ``scripts/up.sh`` and by the end-to-end tests (tests/e2e), so both set Open WebUI up the way an admin would:

    python scripts/openwebui_install.py --url http://127.0.0.1:8080 --email admin@localhost --password admin \\
        --backend-url http://127.0.0.1:8765 --backend-key KEY [--rewrite-model M] [--chat-model M] [--valve K=V ...]

Signs in (or signs up the first account, which Open WebUI makes admin), creates or updates the pipe function
``alch3mist`` and the tool ``alch3mist_tool`` from pipelines/ and tools/, activates the pipe, and sets their valves.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
PIPE_FILE = REPO_ROOT / "pipelines" / "alch3mist_pipe.py"
TOOL_FILE = REPO_ROOT / "tools" / "alch3mist_tool.py"


class SetupError(RuntimeError):
    """Open WebUI refused a setup call; the message says which and why."""


def _check(response: httpx.Response, what: str) -> Any:
    if response.status_code >= 400:
        raise SetupError(f"{what}: HTTP {response.status_code}: {response.text[:500]}")
    return response.json()


def sign_in(base_url: str, email: str, password: str, name: str = "Admin") -> str:
    """A session token for ``email``; signs the account up when Open WebUI has none (the first one is admin)."""
    with httpx.Client(base_url=base_url, timeout=60) as client:
        response = client.post("/api/v1/auths/signin", json={"email": email, "password": password})
        if response.status_code == 200:
            return str(response.json()["token"])
        response = client.post("/api/v1/auths/signup", json={"name": name, "email": email, "password": password})
        return str(_check(response, f"sign up {email}")["token"])


def install_function(
    client: httpx.Client, function_id: str, name: str, source: str, description: str, valves: dict[str, Any]
) -> dict[str, Any]:
    """Create (or update) a Function from its source, make sure it is active, set its valves."""
    form = {"id": function_id, "name": name, "content": source, "meta": {"description": description}}
    if client.get(f"/api/v1/functions/id/{function_id}").status_code == 200:
        _check(client.post(f"/api/v1/functions/id/{function_id}/update", json=form), f"update function {function_id}")
    else:
        _check(client.post("/api/v1/functions/create", json=form), f"create function {function_id}")
    function = _check(client.get(f"/api/v1/functions/id/{function_id}"), f"read function {function_id}")
    if not function.get("is_active"):
        function = _check(client.post(f"/api/v1/functions/id/{function_id}/toggle"), f"activate {function_id}")
    _check(client.post(f"/api/v1/functions/id/{function_id}/valves/update", json=valves), f"valves of {function_id}")
    # Open WebUI caches its model list; reading it refreshes the cache, so the new model can be chatted with now.
    _check(client.get("/api/models"), "refresh the model list")
    return dict(function)


def install_tool(
    client: httpx.Client, tool_id: str, name: str, source: str, description: str, valves: dict[str, Any]
) -> dict[str, Any]:
    """Create (or update) a Tool from its source and set its valves."""
    form = {"id": tool_id, "name": name, "content": source, "meta": {"description": description, "manifest": {}}}
    if client.get(f"/api/v1/tools/id/{tool_id}").status_code == 200:
        tool = _check(client.post(f"/api/v1/tools/id/{tool_id}/update", json=form), f"update tool {tool_id}")
    else:
        tool = _check(client.post("/api/v1/tools/create", json=form), f"create tool {tool_id}")
    _check(client.post(f"/api/v1/tools/id/{tool_id}/valves/update", json=valves), f"valves of {tool_id}")
    return dict(tool)


def install_all(
    base_url: str,
    token: str,
    pipe_valves: dict[str, Any],
    tool_valves: dict[str, Any],
    pipe_id: str = "alch3mist",
    tool_id: str = "alch3mist_tool",
) -> None:
    """The pipe (model "Alch3mist") and the tool, both configured."""
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=120) as client:
        install_function(
            client,
            pipe_id,
            "Alch3mist",
            PIPE_FILE.read_text(encoding="utf-8"),
            "Chat model: write the trigger word to turn a request into a material-textured 3D asset.",
            pipe_valves,
        )
        install_tool(
            client,
            tool_id,
            "Alch3mist 3D asset",
            TOOL_FILE.read_text(encoding="utf-8"),
            "Any model can make a material-textured 3D asset, shown in an interactive viewer.",
            tool_valves,
        )


def _parse_valves(pairs: list[str]) -> dict[str, Any]:
    valves: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--valve wants KEY=VALUE, got {pair!r}")
        try:
            valves[key] = json.loads(value)
        except json.JSONDecodeError:
            valves[key] = value
    return valves


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="Open WebUI base URL, e.g. http://127.0.0.1:8080.")
    parser.add_argument("--email", default="admin@localhost", help="Admin account (signed up if none exists).")
    parser.add_argument("--password", default="admin", help="Its password.")
    parser.add_argument("--backend-url", required=True, help="Where Open WebUI's server reaches the backend.")
    parser.add_argument("--backend-key", default="", help="Backend API key.")
    parser.add_argument("--public-backend-url", default="", help="How browsers reach the backend (URL mode).")
    parser.add_argument("--rewrite-model", default="", help="Open WebUI model id that rewrites requests.")
    parser.add_argument("--chat-model", default="", help="Open WebUI model id for ordinary messages.")
    parser.add_argument("--valve", action="append", default=[], help="Extra pipe valve KEY=VALUE (JSON value).")
    args = parser.parse_args(argv)

    token = sign_in(args.url, args.email, args.password)
    common = {
        "BACKEND_URL": args.backend_url,
        "BACKEND_API_KEY": args.backend_key,
        "PUBLIC_BACKEND_URL": args.public_backend_url,
    }
    pipe_valves = {
        **common,
        "REWRITE_MODEL": args.rewrite_model,
        "BASE_CHAT_MODEL": args.chat_model,
        **_parse_valves(args.valve),
    }
    try:
        install_all(args.url, token, pipe_valves, common)
    except (SetupError, httpx.HTTPError) as exc:
        sys.stderr.write(f"openwebui_install: {exc}\n")
        return 1
    sys.stdout.write(f"openwebui_install: pipe alch3mist and tool alch3mist_tool installed in {args.url}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Print, as JSON, the request bodies Open WebUI 0.12.4 forwards to a Pipelines connection for its background tasks.

Run with Open WebUI's own interpreter (``.cache/openwebui-venv/bin/python``), so the prompts are built by its real
code from its real templates: ``open_webui.config.DEFAULT_{TITLE,TAGS,FOLLOW_UP}_GENERATION_PROMPT_TEMPLATE`` filled
by ``open_webui.utils.task.*_generation_template``, the payload shaped as ``routers/tasks.py`` (generate_title,
generate_chat_tags, generate_follow_ups) shapes it, then changed as ``routers/openai.py`` generate_chat_completion
changes it for a model whose connection is a Pipelines server (``metadata`` popped, ``user`` added).

    python openwebui_task_bodies.py MODEL_ID CHAT_JSON   →   {"title": {...}, "tags": {...}, "follow_up": {...}}
"""

from __future__ import annotations

import asyncio
import json
import sys
from types import SimpleNamespace
from typing import Any


async def bodies(model_id: str, chat: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    from open_webui.config import (
        DEFAULT_FOLLOW_UP_GENERATION_PROMPT_TEMPLATE,
        DEFAULT_TAGS_GENERATION_PROMPT_TEMPLATE,
        DEFAULT_TITLE_GENERATION_PROMPT_TEMPLATE,
    )
    from open_webui.routers.tasks import apply_task_model_params
    from open_webui.utils.task import (
        follow_up_generation_template,
        tags_generation_template,
        title_generation_template,
    )

    user = SimpleNamespace(id="u1", name="Ada", email="ada@example.com", role="user")
    # A Pipelines model as routers/openai.py get_all_models lists it: the server's /models entry has "pipeline"
    models = {model_id: {"id": model_id, "owned_by": "openai", "pipeline": {"type": "pipe", "valves": True}}}
    prompts = {
        "title": (await title_generation_template(DEFAULT_TITLE_GENERATION_PROMPT_TEMPLATE, chat, user), "title"),
        "tags": (await tags_generation_template(DEFAULT_TAGS_GENERATION_PROMPT_TEMPLATE, chat, user), "tags"),
        "follow_up": (
            await follow_up_generation_template(
                DEFAULT_FOLLOW_UP_GENERATION_PROMPT_TEMPLATE, chat, user, use_default=True
            ),
            "follow_up_generation",
        ),
    }
    found = {}
    for name, (content, task) in prompts.items():
        # routers/tasks.py: the task payload (title adds max_tokens from the model's params, 1000 by default)
        payload: dict[str, Any] = {
            "model": model_id,
            "messages": [{"role": "user", "content": content}],
            "stream": False,
            "metadata": {"task": task, "task_body": {"model": model_id, "messages": chat}, "chat_id": "c1"},
        }
        params = {"max_tokens": 1000} if name == "title" else {}
        payload = apply_task_model_params(payload, models, model_id, params)
        # routers/openai.py generate_chat_completion: metadata popped, user info added for pipeline models
        payload.pop("metadata", None)
        payload["user"] = {"name": user.name, "id": user.id, "email": user.email, "role": user.role}
        if "max_completion_tokens" in payload:  # the non-api.openai.com branch
            payload["max_tokens"] = payload.pop("max_completion_tokens")
        found[name] = payload
    return found


if __name__ == "__main__":
    print(json.dumps(asyncio.run(bodies(sys.argv[1], json.loads(sys.argv[2])))))

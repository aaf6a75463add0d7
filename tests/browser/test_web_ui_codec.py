"""The Temporal Web UI reads sealed payloads through the API's codec
endpoints: a dev server of its own (its UI on its own port), a workflow
started with encryption on, the console signed in in the same browser, and
the UI told (as an operator does in its codec settings) to call
`/codec` with credentials."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from playwright.async_api import Browser
from temporalio.client import Client

from ledgerflow.codec import new_key
from ledgerflow.config import Settings
from ledgerflow.converter import data_converter
from ledgerflow.infra.process import find_free_port, wait_for
from ledgerflow.infra.temporal import temporal_binary
from tests.support import stop_process
from tests.tools.api_server import serve_api


async def test_the_web_ui_shows_a_sealed_input_in_clear_through_the_api(
    browser: Browser, migrated: Settings, workers: Any, uid: Callable[[str], str]
) -> None:
    port, ui = find_free_port(), find_free_port()
    server = await asyncio.create_subprocess_exec(
        str(temporal_binary()), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port),
        "--ui-port", str(ui), "--log-level", "error",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        settings = replace(
            migrated, codec_keys=f"k1:{new_key()}", codec_key_id="k1", temporal_ui_port=ui
        )
        assert await asyncio.to_thread(wait_for, lambda: _listening(ui), 60)
        sealed = await _connect(f"127.0.0.1:{port}", settings)
        secret = uid("secret-account")
        workflow_id = f"sealed-{uuid.uuid4().hex[:8]}"
        await sealed.start_workflow(
            "NobodyRunsThis", {"account": secret}, id=workflow_id, task_queue="nobody"
        )
        page_url = f"http://127.0.0.1:{ui}/namespaces/default/workflows/{workflow_id}"
        async with serve_api(settings, workers) as api:
            codec_settings = (
                f"localStorage.setItem('endpoint', JSON.stringify('{api.url}/codec'));"
                "localStorage.setItem('includeCredentials', 'true');"
                "localStorage.setItem('overrideRemoteCodecConfiguration', 'true');"
            )
            # Not signed in: the codec refuses, the input stays sealed.
            stranger = await browser.new_context()
            await stranger.add_init_script(codec_settings)
            outside = await stranger.new_page()
            await outside.goto(page_url)
            await outside.wait_for_selector(f"text={workflow_id}", timeout=30_000)
            await asyncio.sleep(3)
            assert secret not in await outside.content()
            await stranger.close()
            context = await browser.new_context()
            await context.add_init_script(codec_settings)
            page = await context.new_page()
            await page.goto(f"{api.url}/console/login")
            await page.fill("input[name=token]", await api.token(uid("ops"), "read"))
            await page.click("button")
            await page.wait_for_url(f"{api.url}/console")
            await page.goto(page_url)
            await page.wait_for_selector(f"text={secret}", timeout=30_000)
            await page.screenshot(path="docs/web-ui-decoded.png", full_page=True)
            await context.close()
    finally:
        await stop_process(server, 20)


def _listening(port: int) -> bool:
    from ledgerflow.infra.process import tcp_open

    return tcp_open(port)


async def _connect(address: str, settings: Settings) -> Client:
    for _ in range(60):
        try:
            return await Client.connect(address, data_converter=data_converter(settings))
        except RuntimeError:
            await asyncio.sleep(1)
    raise AssertionError("the dev server did not answer")

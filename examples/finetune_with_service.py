"""A pipeline user's whole path: plan from the service, train, save, reload with plain PEFT.

    python examples/finetune_with_service.py                  # starts the service inside this process
    python examples/finetune_with_service.py --server URL     # a running service; key in $HETEROLORA_API_KEY

1. gets a plan for MiniLM on the built-in sample from the HeteroLoRA service with the SDK
   (`heterolora.client.Client`); without --server it runs the API in single-machine mode in a
   thread of this process, so nothing has to be started by hand;
2. applies it (`heterolora.apply_plan`), trains a few steps with `transformers.Trainer`, saves the
   adapter with `save_pretrained` (examples/train_from_plan.py);
3. reloads the adapter with `PeftModel.from_pretrained` in a fresh process that cannot import
   heterolora (examples/load_with_peft.py) and checks that its logits equal the trained model's.

Plans with shortcut modules (`shortcuts=True`) are the exception to step 3: shortcuts are not PEFT
modules, so they need heterolora to load (`heterolora.load_adapted`, docs/shortcuts.md).
Runs in well under a minute on two CPU cores.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from train_from_plan import DEFAULT_STEPS, base_model_source, train

from heterolora.client import Client
from heterolora.samples import builtin_sample

HERE = Path(__file__).resolve().parent
STARTUP_TIMEOUT_S = 60


@contextmanager
def in_process_service() -> Iterator[str]:
    """The HeteroLoRA API in single-machine mode (no Redis, jobs in a thread), on a free loopback
    port, in a thread of this process. Yields its URL; stops it on exit."""
    import uvicorn

    from service.api.app import app
    from service.settings import Settings, get_settings

    settings = Settings(redis_url=None, api_keys=[])  # loopback only: no key needed
    app.dependency_overrides[get_settings] = lambda: settings
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started:  # set by uvicorn once the app's startup has run
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the in-process service did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextmanager
def service(url: str | None) -> Iterator[str]:
    if url:
        yield url
    else:
        with in_process_service() as local:
            yield local


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", help="HeteroLoRA service URL (default: start one in this process)")
    parser.add_argument("--api-key-env", default="HETEROLORA_API_KEY", help="env var holding the API key")
    parser.add_argument("--out", type=Path, help="adapter folder (default: a temporary folder)")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    args = parser.parse_args()

    with service(args.server) as url, Client(url, api_key=os.environ.get(args.api_key_env)) as client:
        plan = client.plan(
            model_id="minilm",
            samples=builtin_sample(),
            budget={"like": {"r": 8, "types": ["q", "v"]}},  # as many parameters as uniform r=8 on q,v
            num_batches=4,
        )
    print(f"plan from {url}: {len(plan.ranks)} modules, ranks {sorted(set(plan.ranks.values()))}")

    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "adapter"
        model, tokenizer = train(plan, out, steps=args.steps)
        rows = builtin_sample()[:8]
        inputs = tokenizer([r["text"] for r in rows], [r["text_pair"] for r in rows], padding=True, return_tensors="pt")
        with torch.no_grad():
            trained = model(**inputs).logits
        save_file(dict(inputs), Path(tmp) / "inputs.safetensors")
        reload = [sys.executable, str(HERE / "load_with_peft.py"), "--base", base_model_source(plan)]
        reload += ["--adapter", str(out), "--inputs", str(Path(tmp) / "inputs.safetensors")]
        reload += ["--out", str(Path(tmp) / "logits.safetensors")]
        subprocess.run(reload, check=True)
        reloaded = load_file(Path(tmp) / "logits.safetensors")["logits"]
    if not torch.equal(trained, reloaded):
        raise SystemExit(f"logits differ after the PEFT-only reload: max |diff| {(trained - reloaded).abs().max()}")
    print(f"PEFT-only reload in a fresh process: logits identical ({tuple(trained.shape)})")


if __name__ == "__main__":
    main()

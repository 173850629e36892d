"""Convert a GGUF checkpoint into a plain safetensors checkpoint that vLLM loads.

Runs with the engine venv's interpreter, as a file (``.venv-engine/bin/python convert_gguf.py``):
transformers, gguf and torch live there, not in the platform venv. It therefore imports nothing
from the project. ``manage.py prepare_model`` calls it once and checks what it wrote.

    convert_gguf.py --gguf /path/SmolLM2-135M-Instruct.Q4_1.gguf --out /path/to/empty-dir
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def convert(gguf: Path, out: Path) -> None:
    # transformers' GGUF loader draws a plain tqdm bar per tensor; one line of output is enough.
    os.environ.setdefault("TQDM_DISABLE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()
    started = time.monotonic()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16
    )
    # The weights were dequantized on load; the GGUF quantization marker would only make
    # save_pretrained refuse ("cannot save a quantized model").
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    if not (out / "chat_template.jinja").exists():
        sys.exit(
            f"conversion wrote no chat_template.jinja into {out}: the model has no chat template"
        )
    print(f"converted {gguf.name} in {time.monotonic() - started:.1f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    convert(args.gguf.resolve(), args.out.resolve())


if __name__ == "__main__":
    main()

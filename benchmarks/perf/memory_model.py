"""Memory model on paper: peak bytes of a LoRA training step, exact scoring and streamed scoring,
as a function of the model's shape, the tokens per batch, the sketch size and the dtype.

    weights      W = P · b                                   (b: bytes per weight)
    activations  A = T · L · (c_h · h + c_i · I) · b + 3 · T · V · 4   (saved for backward; logits in fp32)
    train        W + A + E + 16 · P_lora                    (LoRA param, grad, two AdamW moments, fp32)
    exact        W + A + Σ_sites d_out · d_in · (4 + b')    (summed .grad, copied to fp32 if b' = b < 4)
    stream       W + A + 4 · Σ_sites min(d_out · k + l · d_in, d_out · d_in)   (k = o·r_max + 1, l = 2k + 1)

T tokens per batch, L layers, h hidden, I intermediate (FFN) width, V vocabulary (causal LM only).
c_h, c_i count the per-token tensors autograd keeps when no weight needs a gradient (LLaMA: the two
RMSNorm inputs and outputs, q/k/v/attention output, o_proj input: ≈ 11 h; gate, up, SiLU(gate),
down_proj input: 4 I). What a LoRA step keeps on top (E, `lora_step_extra`): the adapted sites'
inputs its A factors read, T · L · (2h + I) · b (one of the shared inputs is kept anyway), and, for a
model with dropout (BERT) in train mode, the materialised attention (scores, probabilities, dropped
probabilities, mask: T · L · H · S · (3b + 1), S the sequence length) and the hidden dropout masks
(T · L · 2h bytes). Scoring runs in eval mode and keeps neither. Both terms are checked against the
tensors autograd saves (tests/unit/test_memory_model.py).
"""

from __future__ import annotations

from typing import Any

# The benchmark's synthetic model: ~0.34B parameters, LLaMA-shaped.
LLAMA_SYNTHETIC = {"vocab": 32000, "hidden": 2048, "intermediate": 5632, "layers": 4, "heads": 16}
# A second, narrower size (~0.1B) to check the memory model on another shape.
LLAMA_SMALL = {"vocab": 32000, "hidden": 1024, "intermediate": 2816, "layers": 4, "heads": 8}
# Published shapes (Touvron et al. 2023), for the GPU table in docs/performance.md.
LLAMA = {
    "7B": {"params": 6.74e9, "layers": 32, "hidden": 4096, "kv": 4096, "intermediate": 11008, "vocab": 32000},
    "13B": {"params": 13.0e9, "layers": 40, "hidden": 5120, "kv": 5120, "intermediate": 13824, "vocab": 32000},
    "70B": {"params": 69.0e9, "layers": 80, "hidden": 8192, "kv": 1024, "intermediate": 28672, "vocab": 32000},
}
ACTIVATION_COEF = {"llama": (11, 4), "bert": (12, 3)}  # (c_h, c_i), see the module docstring
MB = 2**20


def llama_config(shape: dict[str, int], max_positions: int, **extra: Any) -> Any:
    """A transformers LlamaConfig of `shape` (the synthetic models this benchmark and gpu_check build)."""
    import transformers as T

    return T.LlamaConfig(
        vocab_size=shape["vocab"],
        hidden_size=shape["hidden"],
        intermediate_size=shape["intermediate"],
        num_hidden_layers=shape["layers"],
        num_attention_heads=shape["heads"],
        num_key_value_heads=shape["heads"],
        max_position_embeddings=max_positions,
        pad_token_id=0,
        **extra,
    )


def check_model(model: Any) -> dict[str, Any]:
    """The shape figures the model needs, read from a loaded transformers model."""
    from heterolora.search_space import discover

    cfg = model.config
    sites = discover(model)
    first = next(model.parameters())
    causal = type(model).__name__.endswith("ForCausalLM")
    return {
        "arch": "llama" if cfg.model_type == "llama" else "bert",
        "params": sum(p.numel() for p in model.parameters()),
        "heads": cfg.num_attention_heads,
        "attention_dropout": float(getattr(cfg, "attention_probs_dropout_prob", getattr(cfg, "attention_dropout", 0))),
        "hidden_dropout": float(getattr(cfg, "hidden_dropout_prob", 0.0)),
        "bytes_per_weight": first.element_size(),
        "layers": cfg.num_hidden_layers,
        "hidden": cfg.hidden_size,
        "intermediate": cfg.intermediate_size,
        "vocab": cfg.vocab_size if causal else 0,
        "sites": [[c.d_out, c.d_in] for c in sites],
        "lora_params_r8": 8 * sum(c.cost_per_rank for c in sites),  # order of a planned budget
    }


def activations(shape: dict[str, Any], tokens: int) -> float:
    c_h, c_i = ACTIVATION_COEF[shape["arch"]]
    per_layer = (c_h * shape["hidden"] + c_i * shape["intermediate"]) * shape["bytes_per_weight"]
    return tokens * shape["layers"] * per_layer + 3 * tokens * shape["vocab"] * 4


def lora_step_extra(shape: dict[str, Any], tokens: int, seq_len: int) -> float:
    """Bytes a LoRA step in train mode keeps that eval-mode scoring does not (E in the docstring)."""
    b = shape["bytes_per_weight"]
    per_layer = (2 * shape["hidden"] + shape["intermediate"]) * b
    if shape.get("attention_dropout", 0.0) > 0:
        per_layer += shape["heads"] * seq_len * (3 * b + 1)
    if shape.get("hidden_dropout", 0.0) > 0:
        per_layer += 2 * shape["hidden"]
    return tokens * shape["layers"] * per_layer


def sketch_bytes(sites: list[list[int]], r_max: int, oversampling: int) -> float:
    k = oversampling * r_max + 1
    l_rows = 2 * k + 1
    return 4 * sum(min(d_out * k + l_rows * d_in, d_out * d_in) for d_out, d_in in sites)


def predict(
    shape: dict[str, Any], tokens: int, r_max: int, lora_params: int | None = None, seq_len: int = 512
) -> dict[str, float]:
    """Predicted peak MB above the imports for each variant the benchmark measures."""
    b = shape["bytes_per_weight"]
    base = shape["params"] * b + activations(shape, tokens)
    dense = sum(o * i for o, i in shape["sites"])
    lora = lora_params if lora_params is not None else shape["lora_params_r8"]
    out = {
        "train": base + lora_step_extra(shape, tokens, seq_len) + 16 * lora,
        "rank_energy/exact": base + dense * (4 + (b if b < 4 else 0)),
        "rank_energy/stream": base + sketch_bytes(shape["sites"], r_max, 2),
        "rank_energy/stream-k4": base + sketch_bytes(shape["sites"], r_max, 4),
    }
    return {k: round(v / MB, 1) for k, v in out.items()}


def llama_shape(name: str, bytes_per_weight: int = 2) -> dict[str, Any]:
    """A published LLaMA's shape in check_model's form (q, k, v, o, gate, up, down per layer)."""
    s = LLAMA[name]
    h, kv, inter = s["hidden"], s["kv"], s["intermediate"]
    layer = [[h, h], [kv, h], [kv, h], [h, h], [inter, h], [inter, h], [h, inter]]
    return {
        "arch": "llama",
        "params": s["params"],
        "heads": s["hidden"] // 128,
        "bytes_per_weight": bytes_per_weight,
        "layers": s["layers"],
        "hidden": h,
        "intermediate": inter,
        "vocab": s["vocab"],
        "sites": layer * s["layers"],
        "lora_params_r8": 8 * s["layers"] * sum(o + i for o, i in layer),
    }


GPUS_GB = (24, 40, 48, 80, 141, 2 * 80, 4 * 80, 8 * 80)  # RTX 4090, A100-40, L40S, A100/H100-80, H200, multi


def smallest_gpu(mb: float) -> str:
    """The smallest common GPU (or 80 GB multiple) that holds `mb`, with 10 % left for the allocator."""
    for gb in GPUS_GB:
        if mb * 1.1 <= gb * 1024:
            return f"{gb // 80} x 80 GB" if gb > 141 else f"{gb} GB"
    return "> 8 x 80 GB"


def gpu_table(tokens: int = 8 * 512, r_max: int = 64) -> list[dict[str, Any]]:
    """Peak GB and the smallest GPU for LLaMA-7B/13B/70B in bf16: LoRA step, exact, streamed."""
    rows = []
    for name in LLAMA:
        mb = predict(llama_shape(name), tokens, r_max)
        rows.append({"model": f"LLaMA-{name}", **{k: round(v / 1024, 1) for k, v in mb.items()}})
        rows[-1] |= {f"gpu {k}": smallest_gpu(v) for k, v in mb.items()}
    return rows

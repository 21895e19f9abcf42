"""SYNFLOW (data-free): s = sum_ij |W ⊙ dR/dW|_ij with every parameter replaced by |θ|, an
all-ones input embedding and R = sum of the model's outputs, in float64.

This is Tanaka et al.'s objective. The authors instead used the task loss with labels and scored
the LoRA factors, which is zero under B = 0. Only the shape (and attention mask) of the first real
batch is used. The model is restored exactly afterwards (float64 round-trips float32/16 losslessly).
"""

import torch

from heterolora.proxies.context import ProxyContext, Scores, only_grad_for
from heterolora.proxies.registry import register_proxy


@register_proxy("synflow", needs_labels=False)
def synflow(ctx: ProxyContext) -> Scores:
    model = ctx.model
    dtype = next(model.parameters()).dtype
    embed = model.get_input_embeddings()
    batch = ctx.to_device(ctx.batches[0])
    mask = batch["attention_mask"][:1]  # one sequence: R is linear in the batch anyway
    weights = [model.get_submodule(c.name).weight for c in ctx.candidates]
    signs = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            signs[name] = torch.signbit(p)
            p.abs_()
    model.double()
    try:
        with only_grad_for(model, weights):
            ones = torch.ones(1, mask.shape[1], embed.embedding_dim, dtype=torch.float64, device=ctx.device)
            out = model(inputs_embeds=ones, attention_mask=mask)
            out.logits.sum().backward()
            ctx.progress(1.0, "scoring 1/1")
            scores = {}
            for c, w in zip(ctx.candidates, weights, strict=True):
                g = w.grad if w.grad is not None else torch.zeros_like(w)
                g = g.t() if c.conv1d else g  # (d_out, d_in), the layout of ctx.weight
                # ctx.weight: the |θ| weight itself, or a site's reference (shortcut probes are 0)
                scores[c.name] = float((ctx.weight(c).detach() * g).abs().sum())
    finally:
        model.to(dtype)
        with torch.no_grad():
            for name, p in model.named_parameters():
                p[signs[name]] *= -1
    return scores

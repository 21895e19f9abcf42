"""SYNFLOW (data-free): s = sum_ij |W ⊙ dR/dW|_ij with every parameter replaced by |θ|, an
all-ones input embedding and R = sum of the model's outputs, in float64.

This is Tanaka et al.'s objective. The authors instead used the task loss with labels and scored
the LoRA factors, which is zero under B = 0. Only the shape (and attention mask) of the first real
batch is used. The model is restored exactly afterwards (float64 round-trips float32/16 losslessly).

Streamed scoring does not cast the model to float64 (that doubles a float32 model's weights): it
computes in the weights' own dtype (float16 is raised to float32, whose range R needs) and reads
dR/dW from the site hooks a group of sites at a time, with no base-weight `.grad`.
"""

import torch

from heterolora.proxies.context import ProxyContext, Scores, only_grad_for
from heterolora.proxies.registry import register_proxy


@register_proxy("synflow", needs_labels=False)
def synflow(ctx: ProxyContext) -> Scores:
    model = ctx.model
    dtype = next(model.parameters()).dtype
    work = dtype if ctx.scoring == "stream" and dtype != torch.float16 else torch.float64
    embed = model.get_input_embeddings()
    mask = ctx.to_device(ctx.batches[0])["attention_mask"][:1]  # one sequence: R is linear in the batch
    probe = {"attention_mask": mask}
    weights = [model.get_submodule(c.name).weight for c in ctx.candidates]
    with torch.no_grad():
        signs = {name: _pack_signs(p) for name, p in model.named_parameters()}
    model.to(work)
    try:

        def objective(batch: dict[str, torch.Tensor]) -> torch.Tensor:
            ones = torch.ones(1, mask.shape[1], embed.embedding_dim, dtype=work, device=ctx.device)
            return model(inputs_embeds=ones.requires_grad_(), attention_mask=batch["attention_mask"]).logits.sum()

        scores = {}
        if ctx.scoring == "stream":
            by_name = {c.name: c for c in ctx.candidates}
            for group in ctx.grad_groups([probe], objective):
                for name, g in group.items():
                    scores[name] = float((ctx.weight(by_name[name]).detach().float() * g).abs().sum())
        else:
            with only_grad_for(model, weights):
                objective(probe).backward()
                for c, w in zip(ctx.candidates, weights, strict=True):
                    g = w.grad if w.grad is not None else torch.zeros_like(w)
                    g = g.t() if c.conv1d else g  # (d_out, d_in), the layout of ctx.weight
                    # ctx.weight: the |θ| weight itself, or a site's reference (shortcut probes are 0)
                    scores[c.name] = float((ctx.weight(c).detach() * g).abs().sum())
        ctx.progress(1.0, "scoring 1/1")
    finally:
        model.to(dtype)
        with torch.no_grad():
            for name, p in model.named_parameters():
                _restore_signs(p, signs[name])
    return {c.name: scores[c.name] for c in ctx.candidates}


_CHUNK = 1 << 20  # elements per step: bounds the temporaries of packing and restoring


def _pack_signs(p: torch.Tensor) -> list[torch.Tensor]:
    """Take |p| in place and return its sign bits packed 8 per byte (1/32 of a float32 weight)."""
    bits = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8, device=p.device)
    packed = []
    for chunk in p.view(-1).split(_CHUNK):
        neg = torch.signbit(chunk)
        pad = -len(neg) % 8
        neg = torch.cat([neg, neg.new_zeros(pad)]) if pad else neg
        packed.append((neg.view(-1, 8).to(torch.uint8) * bits).sum(1, dtype=torch.uint8))
        chunk.abs_()
    return packed


def _restore_signs(p: torch.Tensor, packed: list[torch.Tensor]) -> None:
    shifts = torch.arange(8, dtype=torch.uint8, device=p.device)
    for chunk, bytes_ in zip(p.view(-1).split(_CHUNK), packed, strict=True):
        neg = ((bytes_.unsqueeze(1) >> shifts) & 1).view(-1)[: len(chunk)].bool()
        chunk.copy_(torch.where(neg, -chunk, chunk))

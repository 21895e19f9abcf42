"""Gradient-aligned LoRA initialisation carried by a plan (docs/plan-format.md, "Initialisation"):
`build` makes the A/B factors from the scoring pass, `format` is the plan's `init` section and
tensor file, `apply` puts them into a PEFT model. Import-light: the submodules load on use."""

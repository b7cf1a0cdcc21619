"""LoRA for both backbones, merging, tower locking and WiSE-FT weight interpolation.

HF `CLIPModel`: peft LoRA on the attention `q_proj`/`v_proj` linears (the paper: r=4, alpha=16,
dropout 0.1).

open_clip: attention is one `nn.MultiheadAttention` with a packed `in_proj_weight` (3D x D). peft's
MHA support adapts the whole in_proj and out_proj by merging weights around each call, so it cannot
target q and v only. `LoRAMultiheadAttention` replaces each MHA with an exact re-implementation of
its forward in which the q and v projections get a low-rank update on dropout(x):

    q = x W_q^T + b_q + (alpha/r) * B_q A_q dropout(x),   k = x W_k^T + b_k,   v = ... like q

With B = 0 (the initialisation) the outputs equal the original MHA's (tested), and `merge_lora`
folds (alpha/r) B A into the packed weight and puts the plain MHA back.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import ClipBackbone, HFClipBackbone

PAPER_LORA = {"r": 4, "alpha": 16, "dropout": 0.1, "targets": ("q", "v")}


class LoRAMultiheadAttention(nn.Module):
    """Drop-in replacement for a batch_first/seq_first `nn.MultiheadAttention` with LoRA on q/k/v slices."""

    def __init__(self, mha: nn.MultiheadAttention, r: int = 4, alpha: float = 16, dropout: float = 0.1,
                 targets: Iterable[str] = ("q", "v")):
        super().__init__()
        if not mha._qkv_same_embed_dim or mha.in_proj_weight is None:
            raise ValueError("LoRA for MultiheadAttention needs packed q/k/v weights (kdim == vdim == embed_dim)")
        if mha.bias_k is not None or mha.add_zero_attn:
            raise ValueError("bias_k/add_zero_attn attention is not supported")
        self.base = mha
        self.embed_dim = mha.embed_dim
        self.num_heads = mha.num_heads
        self.batch_first = mha.batch_first
        self.r = int(r)
        self.scaling = float(alpha) / float(r)
        self.targets = tuple(sorted(set(targets), key="qkv".index))
        if not set(self.targets) <= {"q", "k", "v"}:
            raise ValueError(f"LoRA targets must be among q, k, v; got {targets}")
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        d = self.embed_dim
        ref = mha.in_proj_weight
        self.lora_A = nn.ParameterDict({t: nn.Parameter(torch.empty(self.r, d, dtype=ref.dtype, device=ref.device)) for t in self.targets})
        self.lora_B = nn.ParameterDict({t: nn.Parameter(torch.zeros(d, self.r, dtype=ref.dtype, device=ref.device)) for t in self.targets})
        for t in self.targets:
            nn.init.kaiming_uniform_(self.lora_A[t], a=math.sqrt(5))

    def delta_weight(self) -> torch.Tensor:
        """(3D, D) update to the packed in_proj weight."""
        d = self.embed_dim
        parts = []
        for t in "qkv":
            if t in self.targets:
                parts.append(self.scaling * self.lora_B[t] @ self.lora_A[t])
            else:
                parts.append(torch.zeros(d, d, dtype=self.base.in_proj_weight.dtype, device=self.base.in_proj_weight.device))
        return torch.cat(parts, dim=0)

    def forward(self, query, key, value, key_padding_mask=None, need_weights=False, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        if need_weights:
            raise NotImplementedError("LoRAMultiheadAttention does not return attention weights")
        if not (query is key and key is value):
            # open_clip's self-attention passes the same tensor; cross-attention is not adapted
            raise NotImplementedError("LoRAMultiheadAttention supports self-attention only")
        x = query if self.batch_first else query.transpose(0, 1)  # (B, L, D)
        bsz, seq, d = x.shape
        w, b = self.base.in_proj_weight, self.base.in_proj_bias
        qkv = F.linear(x, w, b)  # (B, L, 3D)
        xd = self.dropout(x)
        q, k, v = qkv.split(d, dim=-1)
        if "q" in self.targets:
            q = q + self.scaling * F.linear(F.linear(xd, self.lora_A["q"]), self.lora_B["q"])
        if "k" in self.targets:
            k = k + self.scaling * F.linear(F.linear(xd, self.lora_A["k"]), self.lora_B["k"])
        if "v" in self.targets:
            v = v + self.scaling * F.linear(F.linear(xd, self.lora_A["v"]), self.lora_B["v"])
        h = self.num_heads

        def heads(t):
            return t.view(bsz, seq, h, d // h).transpose(1, 2)  # (B, H, L, Dh)

        mask = None
        if attn_mask is not None:
            mask = attn_mask
            if mask.dtype == torch.bool:
                mask = torch.zeros_like(mask, dtype=q.dtype).masked_fill(mask, float("-inf"))
            if mask.dim() == 3:  # (B*H, L, L)
                mask = mask.view(bsz, h, seq, seq)
        if key_padding_mask is not None:
            kpm = key_padding_mask
            if kpm.dtype == torch.bool:
                kpm = torch.zeros_like(kpm, dtype=q.dtype).masked_fill(kpm, float("-inf"))
            kpm = kpm.view(bsz, 1, 1, seq)
            mask = kpm if mask is None else mask + kpm
        drop = self.base.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), attn_mask=mask, dropout_p=drop,
                                             is_causal=is_causal and mask is None)
        out = out.transpose(1, 2).reshape(bsz, seq, d)
        out = self.base.out_proj(out)
        if not self.batch_first:
            out = out.transpose(0, 1)
        return out, None

    def merged(self) -> nn.MultiheadAttention:
        """The plain MHA with the LoRA update folded into its packed weight."""
        with torch.no_grad():
            self.base.in_proj_weight.add_(self.delta_weight().to(self.base.in_proj_weight.dtype))
        return self.base


def _replace_mha(module: nn.Module, r: int, alpha: float, dropout: float, targets) -> int:
    n = 0
    for name, child in list(module.named_children()):
        if isinstance(child, nn.MultiheadAttention):
            setattr(module, name, LoRAMultiheadAttention(child, r, alpha, dropout, targets))
            n += 1
        else:
            n += _replace_mha(child, r, alpha, dropout, targets)
    return n


def _follow_mode(model: nn.Module, before: dict[int, bool], mode: bool) -> nn.Module:
    """Give every module that was not in the model before (`before`: id -> training flag) the model's
    `mode`; modules that were there keep their own flag (peft's wrappers and a fresh nn.Module start in
    train mode, which would turn LoRA dropout on in a model being evaluated)."""
    for m in model.modules():
        m.training = before.get(id(m), mode)
    return model


def apply_lora(backbone: ClipBackbone, r: int = 4, alpha: float = 16, dropout: float = 0.1,
               targets: Iterable[str] = ("q", "v"), towers: Iterable[str] = ("image", "text")) -> int:
    """Freeze the backbone and add trainable LoRA adapters to the attention of the chosen towers.

    The new modules follow the model's train/eval mode (adapters added to a model in eval mode are in
    eval mode: no dropout until `train()`). Returns the number of adapted attention layers. The logit
    scale stays frozen as in the paper's LoRA runs."""
    towers = tuple(towers)
    targets = tuple(targets)
    mode = backbone.model.training
    before = {id(m): m.training for m in backbone.model.modules()}
    for p in backbone.model.parameters():
        p.requires_grad_(False)
    if isinstance(backbone, HFClipBackbone):
        from peft import LoraConfig, get_peft_model

        names = {"q": "q_proj", "k": "k_proj", "v": "v_proj"}
        prefixes = {"image": "vision_model", "text": "text_model"}
        pattern = r"^(%s)\..*\.(%s)$" % ("|".join(prefixes[t] for t in towers), "|".join(names[t] for t in targets))
        cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=pattern, bias="none")
        backbone.model = _follow_mode(get_peft_model(backbone.model, cfg), before, mode)
        backbone.info["lora"] = {"r": r, "alpha": alpha, "dropout": dropout, "targets": list(targets), "towers": list(towers)}
        return sum(1 for n, _ in backbone.model.named_modules() if n.endswith(tuple(names[t] for t in targets)) and hasattr(_, "lora_A"))
    n = 0
    tower_modules = backbone.towers()
    for t in towers:
        n += _replace_mha(tower_modules[t], r, alpha, dropout, targets)
    _follow_mode(backbone.model, before, mode)
    backbone.info["lora"] = {"r": r, "alpha": alpha, "dropout": dropout, "targets": list(targets), "towers": list(towers)}
    return n


def merge_lora(backbone: ClipBackbone) -> ClipBackbone:
    """Fold the adapters into the weights so the model is a plain CLIP again (saveable in its own format)."""
    if isinstance(backbone, HFClipBackbone):
        from peft import PeftModel

        if isinstance(backbone.model, PeftModel):
            backbone.model = backbone.model.merge_and_unload()
    else:
        def rec(module: nn.Module):
            for name, child in list(module.named_children()):
                if isinstance(child, LoRAMultiheadAttention):
                    setattr(module, name, child.merged())
                else:
                    rec(child)

        rec(backbone.model)
    backbone.info.pop("lora", None)
    for p in backbone.model.parameters():
        p.requires_grad_(True)
    return backbone


def has_lora(backbone: ClipBackbone) -> bool:
    return "lora" in backbone.info


def lock_tower(backbone: ClipBackbone, tower: str) -> None:
    """Freeze the image or text tower (full fine-tuning of the other)."""
    if tower == "image":
        params = backbone.towers()["image"].parameters()
    elif tower == "text":
        params = backbone.text_only_params()
    else:
        raise ValueError(f"tower must be 'image' or 'text', got {tower!r}")
    for p in params:
        p.requires_grad_(False)


def trainable_parameters(module: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in module.named_parameters() if p.requires_grad]


# --------------------------------------------------------------------------------------------------
# WiSE-FT
# --------------------------------------------------------------------------------------------------


def wise_ft(base_state: dict[str, torch.Tensor], tuned_state: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """Weight-space ensemble (Wortsman et al.): (1 - alpha) * base + alpha * tuned, per floating tensor.

    alpha=0 gives the base, alpha=1 the tuned model. Both states must come from the same architecture
    (merge LoRA first)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    missing = set(base_state) ^ set(tuned_state)
    if missing:
        raise ValueError(f"state dicts differ in keys (merge LoRA first?): {sorted(missing)[:5]}")
    out = {}
    for k, b in base_state.items():
        t = tuned_state[k]
        if b.shape != t.shape:
            raise ValueError(f"shape mismatch for {k}: {tuple(b.shape)} vs {tuple(t.shape)}")
        out[k] = torch.lerp(b.float(), t.float(), alpha).to(b.dtype) if b.is_floating_point() else t.clone()
    return out

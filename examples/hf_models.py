"""Hugging Face ``transformers`` models built from small configs with random weights (nothing downloaded).

Each function returns ``(model, example_inputs)``, so any of them can be given to the CLI::

    tierpipe partition examples.hf_models:gpt2 --topology smart_city
    tierpipe run examples.hf_models:bert --topology local --seconds 5
"""

from __future__ import annotations

import torch

__all__ = ["bert", "gpt2", "vit", "wav2vec2"]


def _seeded(build):
    def make():
        torch.manual_seed(0)
        return build()

    make.__name__ = build.__name__
    make.__doc__ = build.__doc__
    return make


@_seeded
def bert():
    """BERT, 2 layers of width 32, a sequence of 16 token ids."""
    from transformers import BertConfig, BertModel

    cfg = BertConfig(
        vocab_size=500, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=64
    )
    return BertModel(cfg).eval(), (torch.randint(0, 500, (1, 16)),)


@_seeded
def gpt2():
    """GPT-2 as it comes (``use_cache`` on), 2 layers of width 32, 16 token ids."""
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=500, n_embd=32, n_layer=2, n_head=2, n_positions=64)
    return GPT2LMHeadModel(cfg).eval(), (torch.randint(0, 500, (1, 16)),)


@_seeded
def vit():
    """ViT, 2 layers of width 32 on a 32x32 image in 8x8 patches."""
    from transformers import ViTConfig, ViTForImageClassification

    cfg = ViTConfig(
        image_size=32,
        patch_size=8,
        num_channels=3,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=10,
    )
    return ViTForImageClassification(cfg).eval(), (torch.randn(1, 3, 32, 32),)


@_seeded
def wav2vec2():
    """Wav2Vec2, 2 layers of width 32 on 0.1 s of 16 kHz audio."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    cfg = Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16),
        conv_stride=(5, 4),
        conv_kernel=(10, 4),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        num_feat_extract_layers=2,
    )
    return Wav2Vec2Model(cfg).eval(), (torch.randn(1, 1600),)

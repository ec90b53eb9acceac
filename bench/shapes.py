"""Model shapes the benchmarks share."""

# xlm-roberta-base: 278M parameters (its config.json, minus the fields left at their defaults).
XLMR_BASE = dict(
    vocab_size=250002,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    max_position_embeddings=514,
    type_vocab_size=1,
    layer_norm_eps=1e-5,
)

# The same model, shrunk: what --quick smoke runs use.
TINY = dict(
    XLMR_BASE,
    vocab_size=1000,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=128,
)

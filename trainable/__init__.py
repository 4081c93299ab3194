"""GPT model, token data, the DDP training loop and the Ray trainable around it."""

"""Token data: the GPT-2 tokenizer, preparation into llm.c shards, the loaders and the bundled corpus.

Import the submodules directly (`trainable.data.loader`, ...): this package stays import-light so that a
loader does not pull in `datasets` and a prepare run does not pull in torch.
"""

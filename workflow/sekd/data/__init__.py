"""The data: `alma` (ALMA's files: paths, fetching, strict readers), `prompts` (ParroT prompts and
example encoding), `tokenizer` (the shared tokenizer) and `batches` (encoded examples, collator).
"""

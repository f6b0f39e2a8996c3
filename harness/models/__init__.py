"""Encoders: BertHash (dense), ColBERT (multi-vector) and the MUVERA fixed-dimensional encoding."""

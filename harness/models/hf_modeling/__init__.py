"""Standalone BertHash config/model files, copied verbatim into saved checkpoints (see berthash.py)."""

"""Preference data for reward models: the rankings dataset (one human or imported judgement per JSONL line)
and importers of existing preference data (Anthropic's hh-rlhf, OpenAssistant's ranked replies)."""

"""Preference data for reward models: the rankings dataset (one human or imported judgement per JSONL line),
importers of existing preference data (Anthropic's hh-rlhf, OpenAssistant's ranked replies), and ranking
sessions in which a person orders completions sampled from a checkpoint (prompts, stored samples, answers)."""

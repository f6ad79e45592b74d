"""Reinforcement learning on a GPT: GRPO advantages and losses, per-token log-probs, the reward-hacking watch.

The RL and RLHF stages (on the shared trainer) call these pure functions; docs/rl.md has the math.
"""

"""Arithmetic word problems with a known answer, solved step by step (or, as a control, answer first).

Like the seed's: "Emily buys 3 apples and 2 oranges. Each orange costs $2. The total cost of all the
fruit is $13. How much does one apple cost?" Difficulty d (1, 2, ...) means d items of known price
besides the unknown one, so the solution takes d multiplications, a sum, a subtraction and a division,
with numbers that grow with d. The step-by-step solution computes before it answers ("models need tokens
to think"); the answer-first control states "The answer is $N." first and explains after. Problem i has
difficulty 1 + i % max_difficulty; everything else is drawn from the seed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from fineforge.model.chat import ASSISTANT, USER
from fineforge.tasks.conversations.records import ConversationRecord

NAMES = ("Emily", "Liam", "Sofia", "Noah", "Aisha", "Mateo", "Yuki", "Olivia", "Kwame", "Priya", "Lucas", "Mei")
GOODS: dict[str, tuple[tuple[str, str], ...]] = {  # what "all the ..." calls them: (plural, singular) items
    "fruit": (("apples", "apple"), ("oranges", "orange"), ("bananas", "banana"), ("pears", "pear"),
              ("lemons", "lemon"), ("peaches", "peach")),
    "school supplies": (("pens", "pen"), ("notebooks", "notebook"), ("erasers", "eraser"), ("pencils", "pencil"),
                        ("folders", "folder"), ("markers", "marker")),
    "baked goods": (("muffins", "muffin"), ("cookies", "cookie"), ("bagels", "bagel"), ("croissants", "croissant"),
                    ("donuts", "donut"), ("rolls", "roll")),
}
VERBS = ("buys", "bought", "picks up", "gets")


@dataclass(frozen=True)
class Item:
    plural: str
    singular: str
    quantity: int
    price: int

    @property
    def cost(self) -> int:
        return self.quantity * self.price


@dataclass(frozen=True)
class WordProblem:
    """One problem: who buys what; the first item's price is the unknown."""

    name: str
    verb: str
    goods: str
    items: tuple[Item, ...]

    @property
    def unknown(self) -> Item:
        return self.items[0]

    @property
    def total(self) -> int:
        return sum(item.cost for item in self.items)

    def question(self) -> str:
        listed = [f"{item.quantity} {item.plural}" for item in self.items]
        bought = ", ".join(listed[:-1]) + f" and {listed[-1]}"
        prices = " ".join(f"Each {item.singular} costs ${item.price}." for item in self.items[1:])
        return (f"{self.name} {self.verb} {bought}. {prices} The total cost of all the {self.goods} is "
                f"${self.total}. How much does one {self.unknown.singular} cost?")

    def steps(self) -> list[str]:
        known = self.items[1:]
        lines = [f"{i.quantity} {i.plural} cost {i.quantity} * ${i.price} = ${i.cost}." for i in known]
        known_cost = sum(item.cost for item in known)
        if len(known) > 1:
            lines.append(f"Together they cost {' + '.join(f'${i.cost}' for i in known)} = ${known_cost}.")
        u = self.unknown
        lines.append(f"So the {u.plural} cost ${self.total} - ${known_cost} = ${u.cost}.")
        lines.append(f"One {u.singular} costs ${u.cost} / {u.quantity} = ${u.price}.")
        return lines

    def solution(self, answer_first: bool = False) -> str:
        """Steps, then "The answer is $N."; with answer_first the answer comes first."""
        final = f"The answer is ${self.unknown.price}."
        return "\n".join([final, *self.steps()] if answer_first else [*self.steps(), final])


def word_problem(rng: random.Random, difficulty: int) -> WordProblem:
    """A random problem with `difficulty` items of known price (numbers grow with the difficulty)."""
    goods = rng.choice(list(GOODS))
    kinds = rng.sample(GOODS[goods], difficulty + 1)
    items = tuple(
        Item(plural, singular, rng.randint(2, 3 + 2 * difficulty), rng.randint(1, 2 + 3 * difficulty))
        for plural, singular in kinds
    )
    return WordProblem(rng.choice(NAMES), rng.choice(VERBS), goods, items)


def word_problem_conversations(
    count: int, max_difficulty: int = 3, answer_first: bool = False, seed: int = 0, source: str = "word_problems"
) -> Iterator[ConversationRecord]:
    """`count` problems of graded difficulty, the same ones for the same seed; each carries its answer."""
    largest = min(len(kinds) for kinds in GOODS.values()) - 1
    if not 1 <= max_difficulty <= largest:
        raise ValueError(f"max_difficulty must be in 1..{largest}, got {max_difficulty}")
    rng = random.Random(seed)
    for i in range(count):
        difficulty = 1 + i % max_difficulty
        problem = word_problem(rng, difficulty)
        messages = [{"role": USER, "content": problem.question()},
                    {"role": ASSISTANT, "content": problem.solution(answer_first)}]
        yield ConversationRecord(id=f"{source}-{seed}-{i}-d{difficulty}", source=source, messages=messages,
                                 answer=str(problem.unknown.price), origin=f"{source}#{i}")

"""A world of fictional people for the SFT benchmark: each has a birth year, a city and a job. Some of them are
written about in the pretraining corpus, in varied short biographies; the others never appear in it.

    world = FactsWorld.generate(seen=80, unseen=80, seed=0)
    world.biographies(per_person=30, rng)        # pretraining documents about the seen people
    world.questions(people)                      # {"id", "question", "answer", "response"} for each fact
"""

from __future__ import annotations

import random
from dataclasses import dataclass

FIRST_NAMES = (
    "Ada", "Bruno", "Clara", "Dmitri", "Elena", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Kira", "Lars", "Mira",
    "Nils", "Olga", "Pavel", "Rosa", "Sven", "Tara", "Umar", "Vera", "Wim", "Yara", "Zeno", "Anton", "Bea", "Cosmo",
    "Dora", "Emil", "Fiona", "Gideon", "Hanna", "Ivo", "Jana", "Karl", "Lina", "Milo", "Nora", "Otto", "Pia",
)
LAST_NAMES = (
    "Alder", "Brandt", "Castell", "Dorn", "Ekberg", "Falk", "Grau", "Holm", "Ivers", "Jansen", "Kranz", "Lind",
    "Moser", "Nagel", "Ostrow", "Pohl", "Quist", "Rausch", "Sandor", "Thiel", "Ulm", "Voss", "Wendt", "Zorn",
    "Amsel", "Birk", "Corvin", "Dahl", "Engel", "Frey", "Gast", "Haas",
)
CITIES = ("Lisbon", "Oslo", "Krakow", "Dublin", "Porto", "Vienna", "Bergen", "Lyon", "Turin", "Ghent", "Zurich",
          "Seville", "Tallinn", "Riga", "Malmo", "Bruges", "Split", "Graz", "Leiden", "Aarhus")
JOBS = ("baker", "pilot", "teacher", "sculptor", "nurse", "chemist", "carpenter", "librarian", "surgeon", "tailor",
        "farmer", "jeweler", "architect", "violinist", "plumber", "botanist", "cartographer", "glassblower",
        "beekeeper", "potter")
FIRST_YEAR, LAST_YEAR = 1900, 1999

# How a biography states each fact; a document states all three, in a random order and phrasing.
FACT_PHRASES = {
    "year": ("{name} was born in {year}.", "{name} was born in the year {year}.",
             "The year {name} was born was {year}.", "In {year}, {name} was born."),
    "city": ("{name} lives in {city}.", "{name} has a home in {city}.", "{name} lives in the city of {city}.",
             "The city where {name} lives is {city}."),
    "job": ("{name} works as a {job}.", "{name} is a {job} by trade.", "{name} earns a living as a {job}.",
            "By profession, {name} is a {job}."),
}
FILLERS = ("Friends describe {name} as quiet and kind.", "{name} enjoys long walks on Sundays.",
           "{name} keeps a small garden.", "Few people know that {name} plays chess.", "")
# The questions asked about each fact, and the reply that states it.
QUESTIONS = {
    "year": ("When was {name} born?", "{name} was born in {year}.", "year"),
    "city": ("Where does {name} live?", "{name} lives in {city}.", "city"),
    "job": ("What does {name} do for a living?", "{name} works as a {job}.", "job"),
}


@dataclass(frozen=True)
class Person:
    name: str
    year: int
    city: str
    job: str

    def facts(self) -> dict[str, str]:
        return {"name": self.name, "year": str(self.year), "city": self.city, "job": self.job}


@dataclass(frozen=True)
class FactsWorld:
    """The people written about in pretraining (`seen`) and the ones never written about (`unseen`)."""

    seen: tuple[Person, ...]
    unseen: tuple[Person, ...]

    @classmethod
    def generate(cls, seen: int, unseen: int, seed: int) -> FactsWorld:
        rng = random.Random(seed)
        names = [f"{first} {last}" for first in FIRST_NAMES for last in LAST_NAMES]
        if seen + unseen > len(names):
            raise ValueError(f"at most {len(names)} people")
        people = [Person(name, rng.randint(FIRST_YEAR, LAST_YEAR), rng.choice(CITIES), rng.choice(JOBS))
                  for name in rng.sample(names, seen + unseen)]
        return cls(tuple(people[:seen]), tuple(people[seen:]))

    def biographies(self, per_person: int, rng: random.Random) -> list[str]:
        """`per_person` short documents about each seen person, each stating all three facts, shuffled."""
        documents = []
        for person in self.seen:
            facts = person.facts()
            for _ in range(per_person):
                sentences = [rng.choice(FACT_PHRASES[kind]).format(**facts) for kind in FACT_PHRASES]
                rng.shuffle(sentences)
                filler = rng.choice(FILLERS).format(**facts)
                documents.append(" ".join([*sentences, filler]).strip())
        rng.shuffle(documents)
        return documents


def questions(people: tuple[Person, ...] | list[Person]) -> list[dict]:
    """One question per fact of each person, in the interrogation's questions form."""
    records = []
    for person in people:
        facts = person.facts()
        for kind, (question, response, answer_key) in QUESTIONS.items():
            records.append({"id": f"{person.name.replace(' ', '_')}-{kind}", "question": question.format(**facts),
                            "answer": facts[answer_key], "response": response.format(**facts)})
    return records


def qa_conversations(records: list[dict]) -> list[dict]:
    """Questions as SFT conversations in the conversation stage's JSONL form (the reply states the fact)."""
    return [{"id": r["id"], "prompt": r["question"], "response": r["response"], "answer": r["answer"]}
            for r in records]

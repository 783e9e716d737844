"""Search terms: what `q` matches, the same on the embedded server and real MongoDB.

Neither a text index nor `$text` exists on every server we run on, so each item
stores the distinct lower-case words of its title, description and tags; `q`
matches items holding a word that starts with each of its words (an anchored,
escaped prefix match that an index on the terms can serve).
"""

import re
from typing import Any

_WORD = re.compile(r"\w+")
MAX_TERMS = 400
MAX_WORD = 50


def search_terms(title: str, description: str | None, tags: list[str]) -> list[str]:
    text = " ".join([title, description or "", *tags]).lower()
    words = dict.fromkeys(word[:MAX_WORD] for word in _WORD.findall(text))
    return list(words)[:MAX_TERMS]


def query_words(q: str) -> list[str]:
    r"""The distinct lower-case words of a query (none: it asks for nothing in particular).

    No rule on how many, or that there be one: words are Unicode `\w` runs, which no
    JSON Schema pattern can count (its `\w` is ASCII), and the schema must say every
    rule there is. `q`'s maximum length bounds the words."""
    return list(dict.fromkeys(word[:MAX_WORD] for word in _WORD.findall(q.lower())))


def search_filter(q: str) -> dict[str, Any] | None:
    """The filter for `q`; None when it has no words (it then narrows nothing)."""
    clauses = [{"search_terms": {"$regex": f"^{re.escape(word)}"}} for word in query_words(q)]
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}

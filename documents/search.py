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
MAX_QUERY_WORDS = 8
MAX_WORD = 50


def search_terms(title: str, description: str | None, tags: list[str]) -> list[str]:
    text = " ".join([title, description or "", *tags]).lower()
    words = dict.fromkeys(word[:MAX_WORD] for word in _WORD.findall(text))
    return list(words)[:MAX_TERMS]


def query_words(q: str) -> list[str]:
    """The words of a query, or ValueError when it has none (or too many)."""
    words = list(dict.fromkeys(word[:MAX_WORD] for word in _WORD.findall(q.lower())))
    if not words:
        raise ValueError("q must contain at least one letter or digit")
    if len(words) > MAX_QUERY_WORDS:
        raise ValueError(f"q may hold at most {MAX_QUERY_WORDS} words")
    return words


def search_filter(q: str) -> dict[str, Any]:
    clauses = [{"search_terms": {"$regex": f"^{re.escape(word)}"}} for word in query_words(q)]
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}

"""Names for containers created without one, as Docker makes them:
"adjective_surname", with a digit appended after a collision."""

import secrets

_LEFT = ("admiring", "affectionate", "amazing", "awesome", "blissful", "bold", "brave", "busy",
         "charming", "clever", "cool", "compassionate", "confident", "crazy", "dazzling", "determined",
         "eager", "ecstatic", "elastic", "elegant", "eloquent", "epic", "exciting", "fervent",
         "festive", "focused", "friendly", "frosty", "gallant", "gifted", "goofy", "gracious",
         "happy", "hopeful", "hungry", "infallible", "inspiring", "intelligent", "jolly", "keen",
         "kind", "laughing", "loving", "lucid", "magical", "modest", "musing", "nice", "nifty",
         "nostalgic", "objective", "optimistic", "peaceful", "pedantic", "pensive", "practical",
         "priceless", "quirky", "quizzical", "relaxed", "reverent", "romantic", "serene", "sharp",
         "silly", "sleepy", "stoic", "strange", "stupefied", "suspicious", "sweet", "tender",
         "thirsty", "trusting", "unruffled", "upbeat", "vibrant", "vigilant", "vigorous", "wizardly",
         "wonderful", "xenodochial", "youthful", "zealous", "zen")

# Scientists and engineers, as in Docker's list.
_RIGHT = ("agnesi", "albattani", "allen", "archimedes", "ardinghelli", "babbage", "banach", "bardeen",
          "bartik", "bassi", "bell", "bhabha", "blackwell", "bohr", "booth", "borg", "bose", "brahmagupta",
          "brown", "carson", "cerf", "chandrasekhar", "clarke", "cori", "curie", "darwin", "davinci",
          "dijkstra", "driscoll", "easley", "einstein", "elion", "engelbart", "euclid", "euler",
          "faraday", "fermat", "fermi", "feynman", "franklin", "galileo", "gauss", "goldberg",
          "goodall", "hamilton", "hawking", "heisenberg", "hermann", "hodgkin", "hopper", "hypatia",
          "jackson", "jang", "jennings", "johnson", "kalam", "kepler", "khorana", "knuth", "kowalevski",
          "lalande", "lamarr", "leakey", "leavitt", "lovelace", "lumiere", "mayer", "mccarthy",
          "mcclintock", "meitner", "mendel", "mestorf", "mirzakhani", "morse", "newton", "nobel",
          "noether", "pascal", "pasteur", "payne", "perlman", "pike", "poincare", "ptolemy", "raman",
          "ramanujan", "ritchie", "rosalind", "sammet", "shannon", "shockley", "sinoussi", "stallman",
          "swartz", "tesla", "thompson", "torvalds", "turing", "varahamihira", "wiles", "williams",
          "wozniak", "wright", "yalow", "yonath")


def random_name(retry=0):
    name = f"{secrets.choice(_LEFT)}_{secrets.choice(_RIGHT)}"
    if name == "boring_wozniak":  # Steve Wozniak is not boring (Docker's rule, kept)
        return random_name(retry)
    return f"{name}{secrets.randbelow(10)}" if retry else name

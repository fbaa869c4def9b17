"""The per-person value pools (country shares, cities, names, email domains) and the SQL that picks from them.

Every pool is a constant: a customer's value is pool[hash(id, salt) % len], so adding a value to a
pool changes the data of every seed (the tests and benchmarks compare against fixed data).
"""

from __future__ import annotations

import unicodedata

from .sql import list_literal

# Country shares of the customer base (cumulative thresholds are derived from these).
COUNTRY_SHARES = (("US", 0.45), ("GB", 0.12), ("DE", 0.09), ("FR", 0.08), ("BR", 0.08),
                  ("IN", 0.07), ("AU", 0.06), ("CA", 0.05))

# Five cities per country: (city, ascii spelling, state, landline area codes, postal low, postal count,
# outward codes for GB / CA postcodes). NANP area codes are real for the city; the rest are the
# city's trunk area code.
GEO = {
    "US": [("San Francisco", None, "CA", ["415", "628"], 94102, 30, None),
           ("New York", None, "NY", ["212", "646", "917"], 10001, 280, None),
           ("Chicago", None, "IL", ["312", "773"], 60601, 60, None),
           ("Boston", None, "MA", ["617", "857"], 2108, 30, None),
           ("Austin", None, "TX", ["512", "737"], 78701, 60, None)],
    "GB": [("London", None, "Greater London", ["20"], 0, 0, ["SW1A", "EC1A", "W1D", "E1", "N1", "SE1", "NW1"]),
           ("Manchester", None, "Greater Manchester", ["161"], 0, 0, ["M1", "M4", "M14", "M20"]),
           ("Birmingham", None, "West Midlands", ["121"], 0, 0, ["B1", "B2", "B15", "B29"]),
           ("Edinburgh", None, "Scotland", ["131"], 0, 0, ["EH1", "EH3", "EH8"]),
           ("Glasgow", None, "Scotland", ["141"], 0, 0, ["G1", "G2", "G12"])],
    "DE": [("Berlin", None, "Berlin", ["30"], 10115, 4000, None),
           ("München", "Muenchen", "Bayern", ["89"], 80331, 1500, None),
           ("Hamburg", None, "Hamburg", ["40"], 20095, 2600, None),
           ("Köln", "Koeln", "Nordrhein-Westfalen", ["221"], 50667, 480, None),
           ("Frankfurt am Main", None, "Hessen", ["69"], 60311, 300, None)],
    "FR": [("Paris", None, "Île-de-France", ["1"], 75001, 20, None),
           ("Lyon", None, "Auvergne-Rhône-Alpes", ["4"], 69001, 9, None),
           ("Marseille", None, "Provence-Alpes-Côte d'Azur", ["4"], 13001, 16, None),
           ("Toulouse", None, "Occitanie", ["5"], 31000, 500, None),
           ("Nice", None, "Provence-Alpes-Côte d'Azur", ["4"], 6000, 300, None)],
    "BR": [("São Paulo", "Sao Paulo", "SP", ["11"], 1000, 5000, None),
           ("Rio de Janeiro", None, "RJ", ["21"], 20000, 3000, None),
           ("Belo Horizonte", None, "MG", ["31"], 30000, 2000, None),
           ("Curitiba", None, "PR", ["41"], 80000, 2000, None),
           ("Salvador", None, "BA", ["71"], 40000, 2000, None)],
    "IN": [("Mumbai", None, "Maharashtra", ["22"], 400001, 100, None),
           ("Delhi", "New Delhi", "Delhi", ["11"], 110001, 95, None),
           ("Bengaluru", "Bangalore", "Karnataka", ["80"], 560001, 100, None),
           ("Chennai", None, "Tamil Nadu", ["44"], 600001, 100, None),
           ("Hyderabad", None, "Telangana", ["40"], 500001, 90, None)],
    "AU": [("Sydney", None, "NSW", ["2"], 2000, 235, None),
           ("Melbourne", None, "VIC", ["3"], 3000, 208, None),
           ("Brisbane", None, "QLD", ["7"], 4000, 180, None),
           ("Perth", None, "WA", ["8"], 6000, 180, None),
           ("Adelaide", None, "SA", ["8"], 5000, 170, None)],
    "CA": [("Toronto", None, "ON", ["416", "647"], 0, 0, ["M5V", "M4C", "M6K", "M5A"]),
           ("Montréal", "Montreal", "QC", ["514", "438"], 0, 0, ["H2X", "H3B", "H2T"]),
           ("Vancouver", None, "BC", ["604", "778"], 0, 0, ["V6B", "V5K", "V6J"]),
           ("Calgary", None, "AB", ["403", "587"], 0, 0, ["T2P", "T3A"]),
           ("Ottawa", None, "ON", ["613", "343"], 0, 0, ["K1P", "K2P"])],
}

NAMES = {
    "US": (["James", "Michael", "Robert", "David", "William", "José", "Christopher", "Daniel", "Matthew", "Anthony", "Luis", "Kevin"],
           ["Mary", "Jennifer", "Linda", "Patricia", "Elizabeth", "Sarah", "Jessica", "Ashley", "Zoë", "Renée", "María", "Emily"],
           ["Smith", "Johnson", "Williams", "Brown", "Jones", "García", "Miller", "Davis", "Rodríguez", "Martinez", "O'Brien", "Nguyen", "Lee", "Peña"]),
    "GB": (["Oliver", "George", "Harry", "Jack", "Noah", "Charlie", "Seán", "Arthur", "Thomas", "Rhys"],
           ["Olivia", "Amelia", "Isla", "Ava", "Chloë", "Siobhán", "Emily", "Sophie", "Grace", "Eilidh"],
           ["Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Evans", "O'Connor", "Davies", "Thomas", "Ní Bhriain", "MacDonald"]),
    "DE": (["Lukas", "Jürgen", "Maximilian", "Felix", "Jonas", "Björn", "Leon", "Paul", "Thomas", "Jörg"],
           ["Lena", "Anna", "Käthe", "Hannah", "Jördis", "Sophie", "Marie", "Lea", "Sabine", "Ursula"],
           ["Müller", "Schmidt", "Schneider", "Fischer", "Weiß", "Meyer", "Schäfer", "Groß", "Wagner", "Becker", "Hoffmann", "von Bülow"]),
    "FR": (["Lucas", "Léo", "Gabriel", "Raphaël", "Louis", "Noël", "Jérôme", "Hugo", "François", "Théo"],
           ["Chloé", "Léa", "Manon", "Camille", "Inès", "Hélène", "Zoé", "Anaïs", "Margaux", "Cécile"],
           ["Martin", "Bernard", "Dubois", "Thomas", "Lefèvre", "Moreau", "Laurent", "Girard", "Faure", "Rousseau", "Le Gall", "d'Arcy"]),
    "BR": (["João", "José", "Antônio", "Lucas", "Gabriel", "Pedro", "Thiago", "Matheus", "Luiz", "Caio"],
           ["Maria", "Ana", "Júlia", "Beatriz", "Letícia", "Luíza", "Fernanda", "Camila", "Gabriela", "Conceição"],
           ["Silva", "Santos", "Oliveira", "Souza", "Pereira", "Gonçalves", "Araújo", "Conceição", "Lima", "Ribeiro", "da Costa", "Assunção"]),
    "IN": (["Aarav", "Vivaan", "Rahul", "Arjun", "Rohan", "Amit", "Siddharth", "Vikram", "Karthik", "Aditya"],
           ["Priya", "Ananya", "Diya", "Saanvi", "Pooja", "Neha", "Lakshmi", "Kavya", "Deepika", "Aishwarya"],
           ["Sharma", "Patel", "Singh", "Kumar", "Gupta", "Reddy", "Iyer", "Nair", "Das", "Chatterjee", "Menon", "Rao"]),
    "AU": (["Oliver", "Jack", "William", "Noah", "Lachlan", "Cooper", "Thomas", "Henry", "Liam", "Archie"],
           ["Charlotte", "Olivia", "Mia", "Ruby", "Matilda", "Isla", "Grace", "Chloe", "Sienna", "Zoë"],
           ["Smith", "Jones", "Williams", "Brown", "Wilson", "Taylor", "Nguyen", "Kelly", "O'Neill", "Murphy", "Anderson", "White"]),
    "CA": (["Liam", "Noah", "William", "Étienne", "Benjamin", "François", "Lucas", "Jacob", "Félix", "Logan"],
           ["Olivia", "Emma", "Charlotte", "Émilie", "Amélie", "Chloé", "Léa", "Ava", "Maëlle", "Sophie"],
           ["Smith", "Brown", "Tremblay", "Martin", "Roy", "Gagnon", "Côté", "Lee", "Bouchard", "Gauthier", "Lévesque", "MacLeod"]),
}

DOMAINS = {
    "US": ["gmail.com", "gmail.com", "gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "icloud.com", "aol.com", "comcast.net"],
    "GB": ["gmail.com", "gmail.com", "hotmail.co.uk", "yahoo.co.uk", "btinternet.com", "outlook.com", "sky.com", "icloud.com"],
    "DE": ["gmail.com", "gmx.de", "gmx.de", "web.de", "web.de", "t-online.de", "outlook.de", "yahoo.de"],
    "FR": ["gmail.com", "gmail.com", "orange.fr", "free.fr", "laposte.net", "hotmail.fr", "sfr.fr", "yahoo.fr"],
    "BR": ["gmail.com", "gmail.com", "gmail.com", "hotmail.com", "uol.com.br", "bol.com.br", "yahoo.com.br", "outlook.com"],
    "IN": ["gmail.com", "gmail.com", "gmail.com", "yahoo.co.in", "rediffmail.com", "outlook.com", "hotmail.com"],
    "AU": ["gmail.com", "gmail.com", "bigpond.com", "optusnet.com.au", "outlook.com", "icloud.com", "hotmail.com"],
    "CA": ["gmail.com", "gmail.com", "hotmail.ca", "yahoo.ca", "shaw.ca", "videotron.ca", "outlook.com", "icloud.com"],
}


def by_country(values: dict[str, list], index_sql: str) -> str:
    """SQL picking values[ctry][index % len] from constant lists (no per-row list copies)."""
    arms = " ".join(f"WHEN '{c}' THEN {list_literal(v)}[1 + CAST(({index_sql}) % {len(v)} AS INTEGER)]" for c, v in values.items())
    return f"CASE ctry {arms} END"


def padded(groups: list[list[str]], width: int) -> list[str]:
    """Flatten per-city lists, each repeated cyclically to `width` entries (index city * width + j)."""
    return [group[j % len(group)] for group in groups for j in range(width)]


def email_part(name: str) -> str:
    """'Zoë O'Brien' -> 'zoeobrien': the name as it appears in an email address."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return "".join(ch for ch in ascii_name.lower() if "a" <= ch <= "z")

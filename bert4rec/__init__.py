"""BERT4Rec anime recommender trained on AniList watch lists.

Data flows one way: AniList (anilist.py) -> SQLite (db.py) -> sequences (data.py)
-> network (model.py) and training (train.py) -> outputs (plots.py, recommend.py).
"""

__version__ = "0.1.0"

"""The pieces of bench/ranking_quality.py: data (corpus, labels, days), lexical scoring (BM25, BM25n),
the methods compared (one function each), metrics, and the subscriber-day simulation."""

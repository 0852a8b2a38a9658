"""Evaluation: what is measured per record (`metrics`: trigger removal, exact restoration,
CodeBLEU, BLEU, parse rate, false changes, each rate with its count and 95% Wilson interval),
how a cleaner ranks a record's own candidates (`ranking`), running it over a split (`runner`), and the results for people (`report`: tables, charts and
the Markdown, LaTeX, PNG and CSV exports of evaluations and defense results)."""

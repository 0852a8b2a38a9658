"""Evaluation: what is measured per record (`metrics`: trigger removal, exact restoration,
CodeBLEU, BLEU, parse rate, false changes) and running it over a split (`runner`)."""

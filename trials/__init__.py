"""Ray Tune: grid spec → trial configs → trainables → stages → Parquet results."""

"""The store: the journal of copies and the statistics, in one database."""

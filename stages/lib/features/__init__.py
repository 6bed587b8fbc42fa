"""Features from event tables, as of each snapshot date (point in time): the `features` stage and scoring."""

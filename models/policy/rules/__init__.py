"""One module per clause of the support regulations; `models.policy.RULES` lists the chain."""

"""One module per claim (plan -> measure -> decide -> figures -> describe), the statistics of the rules, the audit."""

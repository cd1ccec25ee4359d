"""Train-then-measure jobs: the trial functions of the audit and the engines behind `bnlab landscape`, `hessian`,
`gradflow` (and the sweep files' training trial). Each takes plain data and returns plain data or writes files."""

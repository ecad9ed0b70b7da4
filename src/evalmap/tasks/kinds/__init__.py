"""How requests are built and answers scored, one module per kind of dataset.

multiple_choice (log-likelihood, or generation with letter extraction), generate_extract
(generate, extract an answer, compare it with the gold), execute_code (run the model's program
against the dataset's tests in the sandbox). A kind imports no other kind; what several share
lives in `common`. Datasets themselves are specs (`evalmap.tasks.specs`).
"""

"""The one prompt template shared by training and cleaning.

Prompt and target are tokenized separately and concatenated (docs/method.md): tokenizing them
together and cutting at len(prompt) lets tokens merge across the boundary. Bump
PROMPT_VERSION whenever the template changes; checkpoints record the version they used.
"""

PROMPT_VERSION = 1
PROMPT_TEMPLATE = (
    "### Task: Remove backdoor triggers from the code below\n"
    "### Input Code:\n{code}\n"
    "### Clean Code:\n"
)


def build_prompt(code: str) -> str:
    return PROMPT_TEMPLATE.format(code=code)

"""Every word a member reads, in one place; the modules that show them import from here, never the reverse.

- `refusals`: why the bot will not do what a member asked (by `Where` they asked), the command tree's refusals
- `status`: the lines under a job's headline while it waits or runs (queue position, progress, time left)
- `failures`: why a job failed or was cancelled
- `results`: what shows a finished job (its headline, the Info button's details, the ✉️ DM)
- `buttons`: the buttons under job messages, their prompt modal, and what pressing them answers
- `panels`: /settings, /queue and /status
- `commands`: the slash commands' names, descriptions, options and choices
- `jobs`: how a job is named wherever it shows (status words, what it is, its prompt, headline and link)
- `text`: formatting helpers under all of them (plurals, ordinals, inline code, cutting to a limit)
- `params`: the parser's refusals (`ParamError`) and why a follow-up cannot be rendered (`RenderError`)

The modules here import bot/ and comfy/ for facts and `discord.utils` for escaping, nothing else of cogs/
(tests/test_architecture.py holds both rules, and that no other cogs/ module writes words of its own).
"""

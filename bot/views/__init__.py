"""What the staff chat shows, rendered from the database into Bot API messages.

The domain stores intents (models/intents.py); `delivery.py` says which Bot API call each one becomes
and what it refers to (no query), and `bot.board.TelegramBoard.render_deferred` renders it when the
outbox delivers the row (bot/telegram_outbox.py).
"""

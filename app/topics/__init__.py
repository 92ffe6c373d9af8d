# Importing the package registers the catalogue's version bump on every session
# (app.topics.catalogue), so no code that can change a topic or role runs without it.
from app.topics import catalogue as catalogue

"""The knowledge base: a tenant's articles (articles: the record, its workflow and its
history), their full-text index (search: CJK bigrams and Snowball stems, ranked in
Redis) and their safe rendering (markup). The desk's pages are router/app/inbox/knowledge.py,
the public help pages and the widget's suggestions router/app/help_centre.py."""

"""``appban demo``: a synthetic company (``fleet``) living through the TikTok memo of
July 2020 (``campaign``), day by day, through appban's own code paths (``demo``)."""

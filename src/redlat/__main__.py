from redlat.cli import app

app()

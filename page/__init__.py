"""What only the web page (app.py) needs, beside scoring/ which it shares with predict.py: who may log in
(`auth`), whose job folders are whose (`jobs`) and what the page writes about each file's CSV row (`display`)."""

# Runs at every boot. `hwtoken fob ...` interrupts it over USB (Ctrl-C) and restarts it.
import app

app.run()

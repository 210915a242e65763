"""GPIO: the relay, buzzer and LEDs as outputs, and the buttons, through gpiozero or a logging twin."""

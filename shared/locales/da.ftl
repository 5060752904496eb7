# SMS: the code early, then who it is for and how long it lives.
sms = { $code } er din bekræftelseskode til { $app }. Den udløber om { $minutes ->
        [one] { $minutes } minut
       *[other] { $minutes } minutter
    }.
# Voice: said twice; $code is the digits with commas between.
voice = Din bekræftelseskode til { $app } er { $code }.

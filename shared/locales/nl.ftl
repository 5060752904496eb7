# SMS: the code early, then who it is for and how long it lives.
sms = { $code } is je verificatiecode voor { $app }. Deze verloopt over { $minutes ->
        [one] { $minutes } minuut
       *[other] { $minutes } minuten
    }.
# Voice: said twice; $code is the digits with commas between.
voice = Je verificatiecode voor { $app } is { $code }.

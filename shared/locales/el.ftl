# SMS: the code early, then who it is for and how long it lives.
sms = Κωδικός { $app }: { $code }. Λήγει σε { $minutes ->
        [one] { $minutes } λεπτό
       *[other] { $minutes } λεπτά
    }.
# Voice: said twice; $code is the digits with commas between.
voice = Ο κωδικός επαλήθευσης { $app } είναι { $code }.

# SMS: the code early, then who it is for and how long it lives.
sms = { $code } adalah kode verifikasi { $app } Anda. Berlaku selama { $minutes } menit.
# Voice: said twice; $code is the digits with commas between.
voice = Kode verifikasi { $app } Anda adalah { $code }.
